from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

from iam.models import User
from iam.services import api_key_create, operator_get_or_create

# The operator's username is the email; AbstractUser.username holds 150 characters.
MAX_EMAIL_LENGTH = User._meta.get_field("username").max_length


class Command(BaseCommand):
    help = "Create (or reuse) a platform operator and print one new API key as the last line."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--name", default="operator key")

    def handle(self, *args, email: str, name: str, **options):
        email = email.strip().lower()
        try:
            validate_email(email)
        except ValidationError:
            raise CommandError(f"'{email}' is not an email address.") from None
        if len(email) > MAX_EMAIL_LENGTH:
            raise CommandError(f"The email is longer than {MAX_EMAIL_LENGTH} characters.")
        user = operator_get_or_create(email=email)
        issued = api_key_create(user=user, tenant=None, name=name)
        self.stderr.write(f"Operator {user.email}: new key {issued.api_key.prefix}… (shown once; store it now)")
        self.stdout.write(issued.raw)
