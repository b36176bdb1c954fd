"""What the IAM concern tells the others."""
from django.dispatch import Signal

# Sent after the commit that revoked them, with `key_ids`: open live connections made with them close.
keys_revoked = Signal()
