from django.core.management.base import BaseCommand

from provisioning.engine.sweeper import sweep


class Command(BaseCommand):
    help = "Run one sweeper pass: resume due retries, stalled jobs and jobs never dispatched."

    def handle(self, *args, **options):
        report = sweep()
        self.stdout.write(
            f"resumed {len(report.retried)} due retr{'y' if len(report.retried) == 1 else 'ies'}, "
            f"{len(report.stalled)} stalled, {len(report.rolling_back)} rollback(s), "
            f"{len(report.undispatched)} never dispatched; {report.webhooks} webhook(s) re-sent "
            f"(claim {report.claim_ms:.1f} ms, dispatch {report.dispatch_ms:.1f} ms)"
        )
