from django.apps import AppConfig


class ProvisioningConfig(AppConfig):
    name = "provisioning"

    def ready(self) -> None:
        from iam.signals import keys_revoked
        from provisioning.live.publish import publish_keys_revoked

        keys_revoked.connect(lambda sender, key_ids, **_: publish_keys_revoked(key_ids), weak=False,
                             dispatch_uid="provisioning-live-keys-revoked")
