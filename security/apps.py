from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured


class SecurityConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "security"

    def ready(self) -> None:
        from security import keystore
        from security.keystore import hooks

        hooks.install()
        # No master key, no start: a process that would otherwise run and then fail every
        # decryption (or, worse, encrypt under a key nobody keeps) says so at once.
        try:
            keystore.check_startup()
        except keystore.KeystoreError as exc:
            raise ImproperlyConfigured(f"keystore: {exc}") from exc
