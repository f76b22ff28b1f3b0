"""008: OpenID Connect: each user's `sub` (random, never the username), the clients an
administrator registered, authorization codes, access and refresh tokens (all hashed)
and the signing keys (the private half encrypted)."""

import peewee as pw
from peewee_migrate import Migrator


def migrate(migrator: Migrator, database: pw.Database, *, fake=False):
    """Add `user.oidc_subject`; create the four tables."""
    migrator.add_fields("user", oidc_subject=pw.CharField(max_length=64, null=True, unique=True))

    @migrator.create_model
    class OidcClient(pw.Model):
        id = pw.AutoField()
        name = pw.CharField(max_length=64, unique=True)
        client_id = pw.CharField(max_length=64, unique=True)
        secret_hash = pw.CharField(max_length=64, null=True)
        redirect_uris = pw.TextField()
        post_logout_redirect_uris = pw.TextField(default="")
        policy = pw.CharField(max_length=24, default="two_factor")
        subjects = pw.TextField(default="")
        offline = pw.BooleanField(default=False)
        launch_url = pw.CharField(max_length=2048, null=True)
        created_at = pw.DateTimeField()
        secret_changed_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "oidc_client"
            legacy_table_names = False

    @migrator.create_model
    class OidcAuthorizationCode(pw.Model):
        id = pw.AutoField()
        code_hash = pw.CharField(max_length=64, unique=True)
        client = pw.ForeignKeyField(
            column_name="client_id",
            field="id",
            model=migrator.orm["oidc_client"],
            on_delete="CASCADE",
        )
        user = pw.ForeignKeyField(
            column_name="user_id", field="id", model=migrator.orm["user"], on_delete="CASCADE"
        )
        redirect_uri = pw.TextField()
        scope = pw.TextField()
        nonce = pw.TextField(null=True)
        code_challenge = pw.CharField(max_length=128)
        code_challenge_method = pw.CharField(max_length=8)
        auth_time = pw.DateTimeField()
        amr = pw.CharField(max_length=120, default="")
        acr = pw.CharField(max_length=120, null=True)
        session_hash = pw.CharField(max_length=64, null=True)
        family = pw.CharField(max_length=64)
        created_at = pw.DateTimeField()
        expires_at = pw.DateTimeField(index=True)
        used_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "oidc_authorization_code"
            legacy_table_names = False

    @migrator.create_model
    class OidcToken(pw.Model):
        id = pw.AutoField()
        access_token_hash = pw.CharField(max_length=64, unique=True)
        refresh_token_hash = pw.CharField(max_length=64, unique=True, null=True)
        client = pw.ForeignKeyField(
            column_name="client_id",
            field="id",
            model=migrator.orm["oidc_client"],
            on_delete="CASCADE",
        )
        user = pw.ForeignKeyField(
            column_name="user_id", field="id", model=migrator.orm["user"], on_delete="CASCADE"
        )
        scope = pw.TextField()
        auth_time = pw.DateTimeField()
        amr = pw.CharField(max_length=120, default="")
        acr = pw.CharField(max_length=120, null=True)
        session_hash = pw.CharField(max_length=64, null=True, index=True)
        family = pw.CharField(max_length=64, index=True)
        issued_at = pw.DateTimeField()
        access_expires_at = pw.DateTimeField(index=True)
        refresh_expires_at = pw.DateTimeField(null=True)
        rotated_at = pw.DateTimeField(null=True)
        revoked_at = pw.DateTimeField(null=True)

        class Meta:
            table_name = "oidc_token"
            legacy_table_names = False

    @migrator.create_model
    class OidcSigningKey(pw.Model):
        id = pw.AutoField()
        kid = pw.CharField(max_length=64, unique=True)
        alg = pw.CharField(max_length=8)
        private_jwk_encrypted = pw.TextField()
        public_jwk = pw.TextField()
        created_at = pw.DateTimeField()
        retired_at = pw.DateTimeField(null=True, index=True)

        class Meta:
            table_name = "oidc_signing_key"
            legacy_table_names = False


def rollback(migrator: Migrator, database: pw.Database, *, fake=False):
    """Drop them: every client must be registered again and every token is void."""
    migrator.remove_model("oidc_signing_key")
    migrator.remove_model("oidc_token")
    migrator.remove_model("oidc_authorization_code")
    migrator.remove_model("oidc_client")
    migrator.remove_fields("user", "oidc_subject")
