"""initial schema

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import endcredits.store.schema

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=True),
        sa.Column("may_go_negative", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.Column("balance_microunits", endcredits.store.schema.Amount(precision=38, scale=0), nullable=False),
        sa.Column("last_transfer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("key", name=op.f("uq_accounts_key")),
    )
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_accounts_holder"), ["holder"], unique=False)

    op.create_table(
        "accrual_batches",
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("batch_event_id", sa.String(length=200), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("agreement_id", sa.String(length=200), nullable=False),
        sa.Column("agreement_version", sa.Integer(), nullable=False),
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("output_count", sa.Integer(), nullable=False),
        sa.Column("line_count", sa.Integer(), nullable=False),
        sa.Column("revenue_microunits", endcredits.store.schema.Amount(precision=38, scale=0), nullable=False),
        sa.Column("pool_microunits", endcredits.store.schema.Amount(precision=38, scale=0), nullable=False),
        sa.Column("evidence_path", sa.Text(), nullable=False),
        sa.Column("evidence_sha256", sa.String(length=64), nullable=False),
        sa.Column("transfer_event_id", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_accrual_batches")),
    )
    with op.batch_alter_table("accrual_batches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_accrual_batches_batch_event_id"), ["batch_event_id"], unique=False)

    op.create_table(
        "agreements",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("body_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_agreements")),
        sa.UniqueConstraint("id", "version", name="uq_agreements_version"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("scopes", sa.String(length=200), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.Column("revoked_at", sa.String(length=32), nullable=True),
        sa.CheckConstraint("role IN ('operator', 'auditor')", name=op.f("ck_api_keys_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False),
        sa.Column("at", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("prev_sha256", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
    )
    op.create_table(
        "carries",
        sa.Column("payee", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("subunits", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("subunits >= 0 AND subunits < 4294967296", name=op.f("ck_carries_below_one_microunit")),
        sa.PrimaryKeyConstraint("payee", "currency", name=op.f("pk_carries")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "consent_grants",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("subject_kind", sa.String(length=16), nullable=False),
        sa.Column("subject_id", sa.String(length=200), nullable=False),
        sa.Column("use", sa.String(length=64), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("valid_from", sa.String(length=32), nullable=False),
        sa.Column("valid_until", sa.String(length=32), nullable=True),
        sa.Column("perpetual", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.Column("revoked_at", sa.String(length=32), nullable=True),
        sa.CheckConstraint("decision IN ('allowed', 'notAllowed')", name=op.f("ck_consent_grants_decision")),
        sa.CheckConstraint("subject_kind IN ('work', 'person')", name=op.f("ck_consent_grants_subject_kind")),
        sa.CheckConstraint("(valid_until IS NULL) = perpetual", name=op.f("ck_consent_grants_perpetual_explicit")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consent_grants")),
    )
    with op.batch_alter_table("consent_grants", schema=None) as batch_op:
        batch_op.create_index("ix_consent_grants_subject", ["subject_kind", "subject_id"], unique=False)

    op.create_table(
        "credits",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("work_seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("person_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("name_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("role_scheme", sa.String(length=32), nullable=False),
        sa.Column("role_code", sa.String(length=64), nullable=False),
        sa.Column("weight", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.CheckConstraint("(person_id IS NULL) <> (name_id IS NULL)", name=op.f("ck_credits_one_payee")),
        sa.CheckConstraint("weight > 0", name=op.f("ck_credits_weight_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credits")),
        sa.UniqueConstraint("work_seq", "person_id", "name_id", "role_scheme", "role_code", name="uq_credits_role"),
    )
    op.create_table(
        "endcredits_meta",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_endcredits_meta")),
    )
    op.create_table(
        "legs",
        sa.Column("transfer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("account_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("amount_microunits", endcredits.store.schema.Amount(precision=38, scale=0), nullable=False),
        sa.PrimaryKeyConstraint("transfer_id", "account_id", name=op.f("pk_legs")),
        sqlite_with_rowid=False,
    )
    with op.batch_alter_table("legs", schema=None) as batch_op:
        batch_op.create_index("ix_legs_account_id", ["account_id"], unique=False)

    op.create_table(
        "models",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("uses", sa.String(length=500), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_models")),
    )
    op.create_table(
        "outputs",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("model_id", sa.String(length=200), nullable=False),
        sa.Column("batch_event_id", sa.String(length=200), nullable=False),
        sa.Column("revenue_microunits", endcredits.store.schema.Amount(precision=38, scale=0), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("occurred_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outputs")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "payout_batches",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("item_count", sa.Integer(), nullable=False),
        sa.Column("total_microunits", endcredits.store.schema.Amount(precision=38, scale=0), nullable=False),
        sa.Column("pain001_path", sa.Text(), nullable=True),
        sa.Column("csv_path", sa.Text(), nullable=True),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.CheckConstraint("status IN ('pending', 'resolved')", name=op.f("ck_payout_batches_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payout_batches")),
    )
    op.create_table(
        "people",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("handle", sa.String(length=200), nullable=False),
        sa.Column("verified_at", sa.String(length=32), nullable=True),
        sa.Column("verified_by", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_people")),
        sa.UniqueConstraint("handle", name=op.f("uq_people_handle")),
    )
    op.create_table(
        "transfers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("reverses_event_id", sa.String(length=200), nullable=True),
        sa.Column("memo", sa.Text(), nullable=False),
        sa.Column("leg_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transfers")),
        sa.UniqueConstraint("event_id", name=op.f("uq_transfers_event_id")),
        sa.UniqueConstraint("reverses_event_id", name=op.f("uq_transfers_reverses_event_id")),
    )
    op.create_table(
        "usage_requests",
        sa.Column("batch_id", sa.String(length=200), nullable=False),
        sa.Column("request_sha256", sa.String(length=64), nullable=False),
        sa.Column("response_json", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("batch_id", name=op.f("pk_usage_requests")),
    )
    op.create_table(
        "auth_challenges",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("person_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.String(length=32), nullable=False),
        sa.Column("used_at", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["person_id"], ["people.id"], name=op.f("fk_auth_challenges_person_id_people")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_challenges")),
    )
    with op.batch_alter_table("auth_challenges", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_auth_challenges_person_id"), ["person_id"], unique=False)

    op.create_table(
        "credentials",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("person_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("credential_id", sa.String(length=200), nullable=False),
        sa.Column("issuer", sa.String(length=200), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("valid_from", sa.String(length=32), nullable=True),
        sa.Column("valid_until", sa.String(length=32), nullable=False),
        sa.Column("status_list", sa.String(length=200), nullable=True),
        sa.Column("status_index", sa.BigInteger(), nullable=True),
        sa.Column("credential_json", sa.Text(), nullable=False),
        sa.Column("added_at", sa.String(length=32), nullable=False),
        sa.Column("invalid_at", sa.String(length=32), nullable=True),
        sa.Column("invalid_reason", sa.String(length=32), nullable=True),
        sa.CheckConstraint("(invalid_at IS NULL) = (invalid_reason IS NULL)", name=op.f("ck_credentials_invalid_why")),
        sa.CheckConstraint("(status_list IS NULL) = (status_index IS NULL)", name=op.f("ck_credentials_status_ref")),
        sa.ForeignKeyConstraint(["person_id"], ["people.id"], name=op.f("fk_credentials_person_id_people")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credentials")),
        sa.UniqueConstraint("credential_id", name=op.f("uq_credentials_credential_id")),
    )
    with op.batch_alter_table("credentials", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_credentials_person_id"), ["person_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_credentials_subject"), ["subject"], unique=False)

    op.create_table(
        "login_links",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("person_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=False),
        sa.Column("expires_at", sa.String(length=32), nullable=False),
        sa.Column("used_at", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["person_id"], ["people.id"], name=op.f("fk_login_links_person_id_people")),
        sa.PrimaryKeyConstraint("token_sha256", name=op.f("pk_login_links")),
    )
    with op.batch_alter_table("login_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_login_links_person_id"), ["person_id"], unique=False)

    op.create_table(
        "manifests",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("model_id", sa.String(length=200), nullable=False),
        sa.Column("uses", sa.String(length=500), nullable=False),
        sa.Column("as_of", sa.String(length=32), nullable=False),
        sa.Column("merkle_root", sa.String(length=64), nullable=False),
        sa.Column("included_count", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("excluded_count", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("checkpoint_sha256", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f("fk_manifests_model_id_models")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_manifests")),
    )
    with op.batch_alter_table("manifests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_manifests_model_id"), ["model_id"], unique=False)

    op.create_table(
        "names",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("person_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("claimed_at", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["person_id"], ["people.id"], name=op.f("fk_names_person_id_people")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_names")),
        sa.UniqueConstraint("name", name=op.f("uq_names_name")),
    )
    op.create_table(
        "payout_items",
        sa.Column("end_to_end_id", sa.String(length=35), nullable=False),
        sa.Column("batch_id", sa.String(length=200), nullable=False),
        sa.Column("person_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("amount_microunits", endcredits.store.schema.Amount(precision=38, scale=0), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("resolved_at", sa.String(length=32), nullable=True),
        sa.CheckConstraint("status IN ('pending', 'settled', 'failed')", name=op.f("ck_payout_items_status")),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["payout_batches.id"], name=op.f("fk_payout_items_batch_id_payout_batches")
        ),
        sa.ForeignKeyConstraint(["person_id"], ["people.id"], name=op.f("fk_payout_items_person_id_people")),
        sa.PrimaryKeyConstraint("end_to_end_id", name=op.f("pk_payout_items")),
    )
    with op.batch_alter_table("payout_items", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_payout_items_batch_id"), ["batch_id"], unique=False)

    op.create_table(
        "private_details",
        sa.Column("person_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("iban", sa.LargeBinary(), nullable=True),
        sa.Column("bic", sa.LargeBinary(), nullable=True),
        sa.Column("email", sa.LargeBinary(), nullable=True),
        sa.Column("updated_at", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["person_id"], ["people.id"], name=op.f("fk_private_details_person_id_people")),
        sa.PrimaryKeyConstraint("person_id", name=op.f("pk_private_details")),
    )
    op.create_table(
        "sessions",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("person_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("via", sa.String(length=16), nullable=False),
        sa.Column("expires_at", sa.String(length=32), nullable=False),
        sa.Column("revoked_at", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.CheckConstraint("via IN ('challenge', 'link')", name=op.f("ck_sessions_via")),
        sa.ForeignKeyConstraint(["person_id"], ["people.id"], name=op.f("fk_sessions_person_id_people")),
        sa.PrimaryKeyConstraint("token_sha256", name=op.f("pk_sessions")),
    )
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sessions_person_id"), ["person_id"], unique=False)

    op.create_table(
        "training_runs",
        sa.Column("id", sa.String(length=200), nullable=False),
        sa.Column("model_id", sa.String(length=200), nullable=False),
        sa.Column("manifest_id", sa.String(length=200), nullable=False),
        sa.Column("merkle_root", sa.String(length=64), nullable=False),
        sa.Column("checkpoint_sha256s", sa.Text(), nullable=False),
        sa.Column("started_at", sa.String(length=32), nullable=False),
        sa.Column("finished_at", sa.String(length=32), nullable=False),
        sa.Column("recorded_at", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["manifest_id"], ["manifests.id"], name=op.f("fk_training_runs_manifest_id_manifests")),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f("fk_training_runs_model_id_models")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_runs")),
    )
    with op.batch_alter_table("training_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_training_runs_manifest_id"), ["manifest_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_training_runs_model_id"), ["model_id"], unique=False)

    op.create_table(
        "works",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("rights_holder_name_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("rights_holder_person_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["rights_holder_name_id"], ["names.id"], name=op.f("fk_works_rights_holder_name_id_names")
        ),
        sa.ForeignKeyConstraint(
            ["rights_holder_person_id"], ["people.id"], name=op.f("fk_works_rights_holder_person_id_people")
        ),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_works")),
        sa.UniqueConstraint("id", name=op.f("uq_works_id")),
        sa.UniqueConstraint("source", name=op.f("uq_works_source")),
    )
    op.create_table(
        "fingerprint_bands",
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("band_key", sa.String(length=40), nullable=False),
        sa.Column("work_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["work_id"], ["works.id"], name=op.f("fk_fingerprint_bands_work_id_works")),
        sa.PrimaryKeyConstraint("method", "band_key", "work_id", name=op.f("pk_fingerprint_bands")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "lineage",
        sa.Column("work_id", sa.String(length=64), nullable=False),
        sa.Column("parent_work_id", sa.String(length=64), nullable=False),
        sa.Column("share_numerator", sa.BigInteger(), nullable=True),
        sa.Column("share_denominator", sa.BigInteger(), nullable=True),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.CheckConstraint(
            "(share_numerator IS NULL AND share_denominator IS NULL) OR (share_numerator >= 0 AND "
            "share_denominator > 0 AND share_numerator <= share_denominator)",
            name=op.f("ck_lineage_share_in_unit"),
        ),
        sa.CheckConstraint("work_id <> parent_work_id", name=op.f("ck_lineage_not_self")),
        sa.ForeignKeyConstraint(["parent_work_id"], ["works.id"], name=op.f("fk_lineage_parent_work_id_works")),
        sa.ForeignKeyConstraint(["work_id"], ["works.id"], name=op.f("fk_lineage_work_id_works")),
        sa.PrimaryKeyConstraint("work_id", "parent_work_id", name=op.f("pk_lineage")),
    )
    op.create_table(
        "manifest_entries",
        sa.Column("manifest_id", sa.String(length=200), nullable=False),
        sa.Column("work_id", sa.String(length=64), nullable=False),
        sa.Column("leaf_index", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("excluded_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "(leaf_index IS NULL) <> (excluded_reason IS NULL)", name=op.f("ck_manifest_entries_included_or_reason")
        ),
        sa.ForeignKeyConstraint(
            ["manifest_id"], ["manifests.id"], name=op.f("fk_manifest_entries_manifest_id_manifests")
        ),
        sa.ForeignKeyConstraint(["work_id"], ["works.id"], name=op.f("fk_manifest_entries_work_id_works")),
        sa.PrimaryKeyConstraint("manifest_id", "work_id", name=op.f("pk_manifest_entries")),
    )
    op.create_table(
        "work_fingerprints",
        sa.Column("work_id", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(["work_id"], ["works.id"], name=op.f("fk_work_fingerprints_work_id_works")),
        sa.PrimaryKeyConstraint("work_id", name=op.f("pk_work_fingerprints")),
    )
    op.create_table(
        "work_links",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("work_id", sa.String(length=64), nullable=False),
        sa.Column("canonical_work_id", sa.String(length=64), nullable=False),
        sa.Column("method", sa.String(length=32), nullable=False),
        sa.Column("similarity_ppm", sa.Integer(), nullable=True),
        sa.Column("linked_by", sa.String(length=16), nullable=False),
        sa.Column("linked_at", sa.String(length=32), nullable=False),
        sa.Column("unlinked_at", sa.String(length=32), nullable=True),
        sa.Column("unlink_reason", sa.String(length=500), nullable=True),
        sa.CheckConstraint("linked_by IN ('fingerprint', 'operator')", name=op.f("ck_work_links_linked_by")),
        sa.CheckConstraint("(unlinked_at IS NULL) = (unlink_reason IS NULL)", name=op.f("ck_work_links_unlink_why")),
        sa.CheckConstraint(
            "similarity_ppm IS NULL OR (similarity_ppm >= 0 AND similarity_ppm <= 1000000)",
            name=op.f("ck_work_links_ppm"),
        ),
        sa.CheckConstraint("work_id <> canonical_work_id", name=op.f("ck_work_links_not_self")),
        sa.ForeignKeyConstraint(
            ["canonical_work_id"], ["works.id"], name=op.f("fk_work_links_canonical_work_id_works")
        ),
        sa.ForeignKeyConstraint(["work_id"], ["works.id"], name=op.f("fk_work_links_work_id_works")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_work_links")),
    )
    with op.batch_alter_table("work_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_work_links_canonical_work_id"), ["canonical_work_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_work_links_work_id"), ["work_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("work_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_work_links_work_id"))
        batch_op.drop_index(batch_op.f("ix_work_links_canonical_work_id"))

    op.drop_table("work_links")
    op.drop_table("work_fingerprints")
    op.drop_table("manifest_entries")
    op.drop_table("lineage")
    op.drop_table("fingerprint_bands")
    op.drop_table("works")
    with op.batch_alter_table("training_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_training_runs_model_id"))
        batch_op.drop_index(batch_op.f("ix_training_runs_manifest_id"))

    op.drop_table("training_runs")
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sessions_person_id"))

    op.drop_table("sessions")
    op.drop_table("private_details")
    with op.batch_alter_table("payout_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payout_items_batch_id"))

    op.drop_table("payout_items")
    op.drop_table("names")
    with op.batch_alter_table("manifests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_manifests_model_id"))

    op.drop_table("manifests")
    with op.batch_alter_table("login_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_links_person_id"))

    op.drop_table("login_links")
    with op.batch_alter_table("credentials", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_credentials_subject"))
        batch_op.drop_index(batch_op.f("ix_credentials_person_id"))

    op.drop_table("credentials")
    with op.batch_alter_table("auth_challenges", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_auth_challenges_person_id"))

    op.drop_table("auth_challenges")
    op.drop_table("usage_requests")
    op.drop_table("transfers")
    op.drop_table("people")
    op.drop_table("payout_batches")
    op.drop_table("outputs")
    op.drop_table("models")
    with op.batch_alter_table("legs", schema=None) as batch_op:
        batch_op.drop_index("ix_legs_account_id")

    op.drop_table("legs")
    op.drop_table("endcredits_meta")
    op.drop_table("credits")
    with op.batch_alter_table("consent_grants", schema=None) as batch_op:
        batch_op.drop_index("ix_consent_grants_subject")

    op.drop_table("consent_grants")
    op.drop_table("carries")
    op.drop_table("audit_log")
    op.drop_table("api_keys")
    op.drop_table("agreements")
    with op.batch_alter_table("accrual_batches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_accrual_batches_batch_event_id"))

    op.drop_table("accrual_batches")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_accounts_holder"))

    op.drop_table("accounts")
