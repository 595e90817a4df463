"""The schema, as SQLAlchemy Core tables. Migrations in ``store/migrations`` create exactly this.

Conventions: money columns are ``Amount`` (exact integers of microunits, beyond int64); times are
ISO-8601 UTC text (``2026-11-21T20:10:48.000000Z``), the same on every backend (they record when a row
was written, so a replay differs from the original in its times, never in its amounts); ids given by
callers are text up to ``ID_LENGTH_MAX``.

Hot tables (``legs``, ``outputs``, ``credits``) carry no foreign keys: an accrual writes 10^5 rows to
each of the first two and a bulk import 10^6 credits, and PostgreSQL's per-row foreign-key triggers
measured 20 us a row here, four times the insert (on SQLite, the checks took 43% of inserting 3 x 10^6
credits). Only ``ledger.records``, ``ledger.accrue`` and ``registry.records.add_credits`` write them, each
checks or creates every reference in the same transaction, and ``endcredits verify`` checks them all.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from endcredits.limits import AMOUNT_DIGITS_MAX, ID_LENGTH_MAX, NAME_LENGTH_MAX, TITLE_LENGTH_MAX

APPLICATION_ID = "endcredits"
"""Written into ``endcredits_meta``; a database without it is not ours and is refused."""


class Amount(TypeDecorator[int]):
    """An exact integer count of microunits of any size: NUMERIC on PostgreSQL, decimal text on SQLite.

    SQLite's INTEGER stops at 2^63 and its NUMERIC falls back to REAL, so there it is stored as text and
    summed in Python, never in SQL.
    """

    impl = Numeric(AMOUNT_DIGITS_MAX + 8, 0)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(AMOUNT_DIGITS_MAX + 9))
        return dialect.type_descriptor(Numeric(AMOUNT_DIGITS_MAX + 8, 0, asdecimal=True))

    def process_bind_param(self, value: int | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"Amount columns take int microunits, got {type(value).__name__}")
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        return int(value)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Id = String(ID_LENGTH_MAX)
# Surrogate keys and counts that grow with the registry or the ledger: 64-bit on every backend. SQLite's
# INTEGER is already 64-bit (and only "INTEGER PRIMARY KEY" is its rowid); PostgreSQL's INTEGER would stop
# at 2.1 billion people, works, transfers or audit entries.
Key = BigInteger().with_variant(Integer(), "sqlite")
Time = String(32)
Sha256 = String(64)

meta = Table(
    "endcredits_meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# Registry ----------------------------------------------------------------------------------------
people = Table(
    "people",
    metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("handle", String(NAME_LENGTH_MAX), nullable=False, unique=True),
    Column("verified_at", Time, nullable=True),
    Column("verified_by", String(NAME_LENGTH_MAX), nullable=True),
    Column("created_at", Time, nullable=False),
    # A deceased person's consent comes from their estate, another person (migration 0007; checked by
    # registry.records.record_death, which is the only writer).
    Column("deceased_at", Time, nullable=True),
    Column("estate_person_id", Key, nullable=True),
)

private_details = Table(
    "private_details",
    metadata,
    # Contact and payment details, apart from the public registry and sealed (registry/private.py).
    Column("person_id", Key, ForeignKey("people.id"), primary_key=True),
    Column("iban", LargeBinary, nullable=True),
    Column("bic", LargeBinary, nullable=True),
    Column("email", LargeBinary, nullable=True),
    Column("updated_at", Time, nullable=False),
)

names = Table(
    "names",
    metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("name", String(NAME_LENGTH_MAX), nullable=False, unique=True),
    Column("person_id", Key, ForeignKey("people.id"), nullable=True),
    Column("claimed_at", Time, nullable=True),
    Column("created_at", Time, nullable=False),
    # The claimed names only (most are unclaimed): what ``ledger.routes`` reads when the claims moved.
    Index(
        "ix_names_claimed",
        "person_id",
        sqlite_where=text("person_id IS NOT NULL"),
        postgresql_where=text("person_id IS NOT NULL"),
    ),
)

# One row: ``claims`` moves (by triggers, migration 0016) whenever a name's claim or a person's verification
# changes, so that a payee's route, cached by ``ledger.routes``, is read again only then; ``names_removed``
# when a name row is removed (the cached registered names are then read again); ``store_token`` tells one
# database from another.
route_versions = Table(
    "route_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("store_token", String(32), nullable=False),
    Column("claims", Key, nullable=False),
    Column("names_removed", Key, nullable=False),
)

works = Table(
    "works",
    metadata,
    # A work's number in registration order: what credits point at, so that a batch of new works' credits
    # lands at the end of their index instead of at random pages of it (SHA-256 ids are random keys).
    Column("seq", Key, primary_key=True, autoincrement=True),
    Column("id", Sha256, nullable=False, unique=True),
    Column("title", String(TITLE_LENGTH_MAX), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("source", String(TITLE_LENGTH_MAX), nullable=True, unique=True),
    Column("size_bytes", BigInteger, nullable=False),
    Column("rights_holder_name_id", Key, ForeignKey("names.id"), nullable=True),
    Column("rights_holder_person_id", Key, ForeignKey("people.id"), nullable=True),
    Column("created_at", Time, nullable=False),
)

credits = Table(
    "credits",
    metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    # The work by its registration number (works.seq), not its SHA-256 id: uq_credits_role leads with it and
    # serves every lookup by work, and new works' credits append to it (a 10^6-work import: see
    # docs/benchmarks.md, "Registry import"). Readers join works for the id. A hot table (see above):
    # add_credits checks the work and the payee in its transaction, verify checks every reference.
    Column("work_seq", Key, nullable=False),
    Column("person_id", Key, nullable=True),
    Column("name_id", Key, nullable=True),
    Column("role_scheme", String(32), nullable=False),
    Column("role_code", String(64), nullable=False),
    Column("weight", BigInteger, nullable=False),
    Column("created_at", Time, nullable=False),
    CheckConstraint("(person_id IS NULL) <> (name_id IS NULL)", name="one_payee"),
    CheckConstraint("weight > 0", name="weight_positive"),
    UniqueConstraint("work_seq", "person_id", "name_id", "role_scheme", "role_code", name="uq_credits_role"),
)

lineage = Table(
    "lineage",
    metadata,
    Column("work_id", Sha256, ForeignKey("works.id"), primary_key=True),
    Column("parent_work_id", Sha256, ForeignKey("works.id"), primary_key=True),
    Column("share_numerator", BigInteger, nullable=True),
    Column("share_denominator", BigInteger, nullable=True),
    Column("created_at", Time, nullable=False),
    CheckConstraint("work_id <> parent_work_id", name="not_self"),
    CheckConstraint(
        "(share_numerator IS NULL AND share_denominator IS NULL) OR "
        "(share_numerator >= 0 AND share_denominator > 0 AND share_numerator <= share_denominator)",
        name="share_in_unit",
    ),
)

# Duplicates: a work registered again under other bytes (a re-encoded image, a lightly edited text) is
# linked to the work first registered, its canonical work. Links are never deleted: an operator's unlink
# sets ``unlinked_at`` and the pair is never linked again by fingerprint. ``fingerprint_bands`` holds the
# locality-sensitive hash bands that find candidates with one indexed lookup per band.
work_fingerprints = Table(
    "work_fingerprints",
    metadata,
    Column("work_id", Sha256, ForeignKey("works.id"), primary_key=True),
    Column("method", String(32), nullable=False),
    Column("value", Text, nullable=False),
    Column("created_at", Time, nullable=False),
)

fingerprint_bands = Table(
    "fingerprint_bands",
    metadata,
    Column("method", String(32), primary_key=True),
    Column("band_key", String(40), primary_key=True),
    Column("work_id", Sha256, ForeignKey("works.id"), primary_key=True),
    sqlite_with_rowid=False,
)

work_links = Table(
    "work_links",
    metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("work_id", Sha256, ForeignKey("works.id"), nullable=False, index=True),
    Column("canonical_work_id", Sha256, ForeignKey("works.id"), nullable=False, index=True),
    Column("method", String(32), nullable=False),
    Column("similarity_ppm", Integer, nullable=True),
    Column("linked_by", String(16), nullable=False),
    Column("linked_at", Time, nullable=False),
    Column("unlinked_at", Time, nullable=True),
    Column("unlink_reason", String(TITLE_LENGTH_MAX), nullable=True),
    CheckConstraint("work_id <> canonical_work_id", name="not_self"),
    CheckConstraint("similarity_ppm IS NULL OR (similarity_ppm >= 0 AND similarity_ppm <= 1000000)", name="ppm"),
    CheckConstraint("linked_by IN ('fingerprint', 'operator')", name="linked_by"),
    CheckConstraint("(unlinked_at IS NULL) = (unlink_reason IS NULL)", name="unlink_why"),
)

credentials = Table(
    "credentials",
    metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("person_id", Key, ForeignKey("people.id"), nullable=False, index=True),
    Column("credential_id", Id, nullable=False, unique=True),
    Column("issuer", Id, nullable=False),
    Column("subject", Id, nullable=False, index=True),
    Column("valid_from", Time, nullable=True),
    Column("valid_until", Time, nullable=False),
    Column("status_list", Id, nullable=True),
    Column("status_index", BigInteger, nullable=True),
    Column("credential_json", Text, nullable=False),
    Column("added_at", Time, nullable=False),
    Column("invalid_at", Time, nullable=True),
    Column("invalid_reason", String(32), nullable=True),
    CheckConstraint("(status_list IS NULL) = (status_index IS NULL)", name="status_ref"),
    CheckConstraint("(invalid_at IS NULL) = (invalid_reason IS NULL)", name="invalid_why"),
)

# Consent -----------------------------------------------------------------------------------------
consent_grants = Table(
    "consent_grants",
    metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("subject_kind", String(16), nullable=False),
    Column("subject_id", String(ID_LENGTH_MAX), nullable=False),
    Column("use", String(64), nullable=False),
    Column("decision", String(16), nullable=False),
    Column("valid_from", Time, nullable=False),
    Column("valid_until", Time, nullable=True),
    Column("perpetual", Boolean, nullable=False),
    Column("source", String(TITLE_LENGTH_MAX), nullable=False),
    Column("created_at", Time, nullable=False),
    Column("revoked_at", Time, nullable=True),
    # Digital-replica terms (migration 0007): what the use is, the one project it covers, and the estate
    # person who granted for a deceased subject.
    Column("use_description", Text, nullable=True),
    Column("project", Id, nullable=True),
    Column("granted_by_person_id", Key, nullable=True),
    CheckConstraint("subject_kind IN ('work', 'person')", name="subject_kind"),
    CheckConstraint("decision IN ('allowed', 'notAllowed')", name="decision"),
    CheckConstraint("(valid_until IS NULL) = perpetual", name="perpetual_explicit"),
    Index("ix_consent_grants_subject", "subject_kind", "subject_id"),
)

licence_terms = Table(
    "licence_terms",
    metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("work_id", String(ID_LENGTH_MAX), nullable=False, index=True),
    Column("payment_type", String(16), nullable=False),
    Column("amount_microunits", Amount, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("uses", String(TITLE_LENGTH_MAX), nullable=False),
    Column("source", String(TITLE_LENGTH_MAX), nullable=False),
    Column("valid_from", Time, nullable=False),
    Column("valid_until", Time, nullable=True),
    Column("perpetual", Boolean, nullable=False),
    Column("created_at", Time, nullable=False),
    CheckConstraint(
        "payment_type IN ('purchase', 'subscription', 'training', 'crawl', 'use', 'contribution', "
        "'attribution', 'free')",
        name="payment_type",
    ),
    CheckConstraint("(valid_until IS NULL) = perpetual", name="perpetual_explicit"),
)

# A person, or an issuer (a guild) for everyone holding its credentials, suspends consent for a while,
# e.g. during a strike (consent/records.py). Never deleted: lifting one sets ``ends_at``.
consent_suspensions = Table(
    "consent_suspensions",
    metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("subject_kind", String(16), nullable=False),
    Column("subject_id", String(ID_LENGTH_MAX), nullable=False),
    Column("uses", String(TITLE_LENGTH_MAX), nullable=False),  # comma-separated; empty: every use
    Column("starts_at", Time, nullable=False),
    Column("ends_at", Time, nullable=True),
    Column("reason", String(TITLE_LENGTH_MAX), nullable=False),
    Column("created_at", Time, nullable=False),
    CheckConstraint("subject_kind IN ('person', 'issuer')", name="subject_kind"),
    Index("ix_consent_suspensions_subject", "subject_kind", "subject_id"),
)

# The issuers the operator trusts to speak for their members (a guild, a union): only these may publish
# guild terms (migration 0009; registry/identity/trusted.py is the only writer). Removal is a timestamp.
trusted_issuers = Table(
    "trusted_issuers",
    metadata,
    Column("issuer", Id, primary_key=True),
    Column("note", String(TITLE_LENGTH_MAX), nullable=False),
    Column("added_at", Time, nullable=False),
    Column("removed_at", Time, nullable=True),
)

# A guild's terms for its members, one stored version per load (migration 0009; consent/guilds.py):
# consent defaults per use, minimum role weights, escrow policy. Never edited; the newest version applies.
guild_terms = Table(
    "guild_terms",
    metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("issuer", Id, nullable=False),
    Column("version", Integer, nullable=False),
    Column("effective_from", Time, nullable=False),
    Column("body", Text, nullable=False),
    Column("body_sha256", Sha256, nullable=False),
    Column("source", String(TITLE_LENGTH_MAX), nullable=False),
    Column("created_at", Time, nullable=False),
    UniqueConstraint("issuer", "version", name="uq_guild_terms_issuer_version"),
)

# Manifests ---------------------------------------------------------------------------------------
models = Table(
    "models",
    metadata,
    Column("id", Id, primary_key=True),
    Column("uses", String(TITLE_LENGTH_MAX), nullable=False),
    Column("description", Text, nullable=False),
    Column("created_at", Time, nullable=False),
)

manifests = Table(
    "manifests",
    metadata,
    Column("id", Id, primary_key=True),
    Column("model_id", Id, ForeignKey("models.id"), nullable=False, index=True),
    Column("uses", String(TITLE_LENGTH_MAX), nullable=False),
    Column("as_of", Time, nullable=False),
    Column("merkle_root", Sha256, nullable=False),
    Column("included_count", Key, nullable=False),
    Column("excluded_count", Key, nullable=False),
    Column("checkpoint_sha256", Sha256, nullable=True),
    Column("created_at", Time, nullable=False),
    Column("project", Id, nullable=True),  # the project it was built for (migration 0007); likeness grants name one
)

manifest_entries = Table(
    "manifest_entries",
    metadata,
    Column("manifest_id", Id, ForeignKey("manifests.id"), primary_key=True),
    Column("work_id", Sha256, ForeignKey("works.id"), primary_key=True),
    Column("leaf_index", Key, nullable=True),
    Column("excluded_reason", Text, nullable=True),
    CheckConstraint("(leaf_index IS NULL) <> (excluded_reason IS NULL)", name="included_or_reason"),
)

training_runs = Table(
    "training_runs",
    metadata,
    Column("id", Id, primary_key=True),
    Column("model_id", Id, ForeignKey("models.id"), nullable=False, index=True),
    Column("manifest_id", Id, ForeignKey("manifests.id"), nullable=False, index=True),
    Column("merkle_root", Sha256, nullable=False),  # the manifest's root, repeated so a run row stands alone
    Column("checkpoint_sha256s", Text, nullable=False),  # JSON list of SHA-256 hex digests, in checkpoint order
    Column("started_at", Time, nullable=False),
    Column("finished_at", Time, nullable=False),
    Column("recorded_at", Time, nullable=False),
)

# Attribution -------------------------------------------------------------------------------------
# One recorded attribution run (attribution/records.py): what produced a set of scores, and the SHA-256 of
# those scores, kept in a Parquet file under ``DATA/attribution-runs/``. Accruals name the run they moved
# money on (``accrual_batches.scores_run_id``); ``verify`` re-checks the chain.
attribution_runs = Table(
    "attribution_runs",
    metadata,
    Column("id", Id, primary_key=True),
    Column("model_id", Id, ForeignKey("models.id"), nullable=False, index=True),
    Column("manifest_id", Id, ForeignKey("manifests.id"), nullable=False, index=True),
    Column("merkle_root", Sha256, nullable=False),  # the manifest's root, repeated so a run row stands alone
    Column("checkpoint_sha256s", Text, nullable=False),  # JSON list, in checkpoint order
    Column("method", String(32), nullable=False),
    Column("weaker", Boolean, nullable=False),  # a method that measures resemblance, not influence
    Column("per", String(8), nullable=False),  # "work" or "payee"
    Column("payee_agreement", Id, nullable=True),  # per payee: the agreement "id@version" whose credit shares
    Column("settings", Text, nullable=False),  # AttributionSettings.to_dict(), canonical JSON
    Column("seeds", Text, nullable=False),  # JSON object
    Column("engine", Text, nullable=False),  # JSON object: package versions
    Column("validity", Text, nullable=True),  # JSON: the model's validity figure, when measured
    Column("output_count", Integer, nullable=False),
    Column("key_count", Integer, nullable=False),  # works (per work) or payees (per payee)
    Column("scores_path", Text, nullable=False),  # relative to the data directory
    Column("scores_sha256", Sha256, nullable=False),  # attribution.records.RunScores.sha256
    Column("created_at", Time, nullable=False),
)

# One measurement of a model's validity (attribution/validity_records.py): the LDS of its attribution against
# retraining on random half subsets of its manifest's works, beside the noise ceiling. The latest row of a
# model is the figure its statements show.
model_validity = Table(
    "model_validity",
    metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("model_id", Id, ForeignKey("models.id"), nullable=False, index=True),
    Column("manifest_id", Id, ForeignKey("manifests.id"), nullable=False),
    Column("merkle_root", Sha256, nullable=False),
    Column("checkpoint_sha256", Sha256, nullable=False),  # the model's checksum (AttributionModel.checksum)
    Column("model_kind", Id, nullable=False),  # a built-in kind or the operator's module:function
    Column("train_function", Id, nullable=False),  # the operator's module:function that retrained
    Column("method", String(32), nullable=False),
    Column("settings_sha256", Sha256, nullable=False),  # SHA-256 of the settings' canonical JSON
    Column("settings", Text, nullable=False),  # AttributionSettings.to_dict(), canonical JSON
    Column("lds", Float, nullable=True),  # against the first seed; NULL when no output varied
    Column("lds_seed_mean", Float, nullable=True),  # against the mean of the seeds: the figure shown
    Column("seed_to_seed_spearman", Float, nullable=True),  # NULL with one seed
    Column("ceiling_one_seed", Float, nullable=True),
    Column("ceiling_seed_mean", Float, nullable=True),
    Column("subsets", Integer, nullable=False),
    Column("seeds", Integer, nullable=False),
    Column("outputs", Integer, nullable=False),
    Column("works", Integer, nullable=False),
    Column("draw_seed", Integer, nullable=False),  # the seed of the half subsets
    Column("lds_per_output", Text, nullable=False),  # JSON list, null where an output did not vary
    Column("measured_at", Time, nullable=False),
)

# Royalties ---------------------------------------------------------------------------------------
agreements = Table(
    "agreements",
    metadata,
    Column("id", Id, primary_key=True),
    Column("version", Integer, nullable=False),
    Column("body", Text, nullable=False),
    Column("body_sha256", Sha256, nullable=False),
    Column("created_at", Time, nullable=False),
    UniqueConstraint("id", "version", name="uq_agreements_version"),
)

outputs = Table(
    "outputs",
    metadata,
    # Every output accrued, by id: its primary key refuses one paid before. Since migration 0002 only the
    # id and batch are written; the output's model, revenue and time are in the evidence, on its lines.
    # Rows written before keep them here (model ids checked by verify, see "Hot tables" above).
    Column("id", Id, primary_key=True),
    Column("model_id", Id, nullable=True),
    Column("batch_event_id", Id, nullable=False),
    Column("revenue_microunits", Amount, nullable=True),
    Column("currency", String(3), nullable=True),
    Column("occurred_at", Time, nullable=True),
    sqlite_with_rowid=False,  # one B-tree keyed by the output id: the dedupe check is the only lookup
)

# The content of an output, where the operator supplied it (royalties/output_contents.py): the generated
# image, tune or text a statement shows beside the money it earned. The bytes are content-addressed under
# ``DATA/outputs/`` (0600 in 0700 folders); one row per output id, never changed once written.
output_contents = Table(
    "output_contents",
    metadata,
    Column("output_id", Id, primary_key=True),
    Column("content_sha256", Sha256, nullable=False),
    Column("media_type", String(64), nullable=False),  # image/png, image/jpeg, text/plain, ...
    Column("size_bytes", BigInteger, nullable=False),
    Column("recorded_at", Time, nullable=False),
)

accrual_batches = Table(
    "accrual_batches",
    metadata,
    Column("event_id", Id, primary_key=True),
    Column("batch_event_id", Id, nullable=False, index=True),
    Column("content_sha256", Sha256, nullable=False),
    Column("agreement_id", Id, nullable=False),
    Column("agreement_version", Integer, nullable=False),
    Column("period", String(7), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("output_count", Integer, nullable=False),
    Column("line_count", Integer, nullable=False),
    Column("revenue_microunits", Amount, nullable=False),
    Column("pool_microunits", Amount, nullable=False),
    Column("evidence_path", Text, nullable=False),
    Column("evidence_sha256", Sha256, nullable=False),
    Column("transfer_event_id", Id, nullable=False),
    Column("created_at", Time, nullable=False),
    # Where the scores came from (migration 0003): a recorded attribution run, or the operator's own scores
    # marked external with a reason; exactly one is set. Both empty: accrued before sources were recorded.
    Column("scores_run_id", Id, nullable=True),
    Column("scores_external_reason", Text, nullable=True),
)

licence_floors = Table(
    "licence_floors",
    metadata,
    # What an accrual group paid beyond its pool to raise a work's share of an output to a licence term's
    # floor (royalties.floors): one row per line topped up, posted in the group's accrual transfer.
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("event_id", Id, nullable=False, index=True),  # the accrual group (accrual_batches.event_id)
    Column("output_id", Id, nullable=False),
    Column("model_id", Id, nullable=False),
    Column("occurred_at", Time, nullable=False),
    Column("attributed_work", Id, nullable=False),
    Column("source_work", Id, nullable=False),
    Column("payee", Id, nullable=False, index=True),
    Column("role", Id, nullable=False),
    Column("account", Id, nullable=False),
    Column("term_id", Key, nullable=False),  # licence_terms.id
    Column("amount_microunits", Amount, nullable=False),
    CheckConstraint("amount_microunits > 0", name="amount_positive"),
)

guild_minimums = Table(
    "guild_minimums",
    metadata,
    # Per accrual group, each (payee, source work, role) whose role weight a guild's minimum raised above
    # the agreement's (royalties.shares.role_weight_of): the term a statement line cites.
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("event_id", Id, nullable=False, index=True),  # the accrual group (accrual_batches.event_id)
    Column("payee", Id, nullable=False, index=True),
    Column("source_work", Id, nullable=False),
    Column("role", Id, nullable=False),
    Column("issuer", Id, nullable=False),  # guild_terms.issuer
    Column("terms_version", Integer, nullable=False),  # guild_terms.version
    Column("weight_min", Integer, nullable=False),  # the guild's minimum, which the lines were weighted by
    Column("agreement_weight", Integer, nullable=False),  # the lower weight the agreement gave the role
    CheckConstraint("weight_min > agreement_weight", name="raised"),
)

training_fees = Table(
    "training_fees",
    metadata,
    # What a manifest's training run owed under licence terms of payment type "training"
    # (royalties.training_fees): one row per payee part, posted in the transfer ``event_id``.
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("event_id", Id, nullable=False, index=True),  # the training_fee transfer
    Column("manifest_id", Id, nullable=False, index=True),
    Column("model_id", Id, nullable=False),
    Column("occurred_at", Time, nullable=False),  # when the fee was posted
    Column("work_id", Id, nullable=False),
    Column("source_work", Id, nullable=False),
    Column("payee", Id, nullable=False, index=True),
    Column("role", Id, nullable=False),
    Column("account", Id, nullable=False),
    Column("term_id", Key, nullable=False),  # licence_terms.id
    Column("amount_microunits", Amount, nullable=False),
    CheckConstraint("amount_microunits > 0", name="amount_positive"),
)

# Ledger ------------------------------------------------------------------------------------------
accounts = Table(
    "accounts",
    metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("key", String(ID_LENGTH_MAX), nullable=False, unique=True),
    Column("kind", String(32), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("holder", String(ID_LENGTH_MAX), nullable=True, index=True),
    Column("may_go_negative", Boolean, nullable=False),
    Column("created_at", Time, nullable=False),
    # The balance as of the last fold: readers add what pending segments hold (ledger/segments.py);
    # `verify` re-derives it from legs and segments.
    Column("balance_microunits", Amount, nullable=False),
    Column("last_transfer_id", Key, nullable=False),
)

transfers = Table(
    "transfers",
    metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("event_id", Id, nullable=False, unique=True),
    Column("code", String(32), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("content_sha256", Sha256, nullable=False),
    Column("reverses_event_id", Id, nullable=True, unique=True),
    Column("memo", Text, nullable=False),
    Column("leg_count", Integer, nullable=False),
    Column("created_at", Time, nullable=False),
)

legs = Table(
    "legs",
    metadata,
    Column("transfer_id", Key, primary_key=True),
    Column("account_id", Key, primary_key=True),
    Column("amount_microunits", Amount, nullable=False),
    Index("ix_legs_account_id", "account_id"),
    sqlite_with_rowid=False,
)


carries = Table(
    "carries",
    metadata,
    Column("payee", String(ID_LENGTH_MAX), primary_key=True),
    Column("currency", String(3), primary_key=True),
    Column("subunits", BigInteger, nullable=False),
    CheckConstraint("subunits >= 0 AND subunits < 4294967296", name="below_one_microunit"),
    sqlite_with_rowid=False,
)

# An accrual transfer's legs and the carries its payees were left with, as two Arrow IPC blobs in one
# row (ledger/segments.py): the rows of a 10^5-payee accrual in one INSERT. Never updated or deleted.
ledger_segments = Table(
    "ledger_segments",
    metadata,
    Column("transfer_id", Key, primary_key=True, autoincrement=False),
    Column("currency", String(3), nullable=False),
    Column("leg_count", Integer, nullable=False),
    Column("carry_count", Integer, nullable=False),
    Column("legs_arrow", LargeBinary, nullable=False),
    Column("carries_arrow", LargeBinary, nullable=False),
    Column("sha256", Sha256, nullable=False),  # segments.segment_sha256; the transfer's audit entry records it
)

# Each fold wrote the segments up to ``through_transfer_id`` into accounts and carries; the largest is
# the watermark above which segments are pending (read through by every reader).
ledger_folds = Table(
    "ledger_folds",
    metadata,
    Column("id", Key, primary_key=True, autoincrement=True),
    Column("through_transfer_id", Key, nullable=False, unique=True),
    Column("segment_count", Integer, nullable=False),
    Column("account_count", Integer, nullable=False),
    Column("carry_count", Integer, nullable=False),
    Column("folded_at", Time, nullable=False),
)

# The payees' accounts (payable, escrow) without an account row, with their balances, last transfers and
# every payee's carry, as of the latest fold (``through_transfer_id``): read through by every reader like a
# pending segment. Accounts opened as rows after it (id above ``account_id_max``) are read from their rows.
# Each fold writes a new one and removes the one before: only the latest row exists.
ledger_snapshots = Table(
    "ledger_snapshots",
    metadata,
    Column("through_transfer_id", Key, primary_key=True, autoincrement=False),
    Column("account_id_max", Key, nullable=False),
    Column("account_count", Integer, nullable=False),
    Column("carry_count", Integer, nullable=False),
    Column("balances_arrow", LargeBinary, nullable=False),
    Column("carries_arrow", LargeBinary, nullable=False),
    Column("sha256", Sha256, nullable=False),  # the fold's audit entry records it
)

# Payouts -----------------------------------------------------------------------------------------
payout_batches = Table(
    "payout_batches",
    metadata,
    Column("id", Id, primary_key=True),
    Column("currency", String(3), nullable=False),
    Column("status", String(16), nullable=False),
    Column("item_count", Integer, nullable=False),
    Column("total_microunits", Amount, nullable=False),
    Column("pain001_path", Text, nullable=True),
    Column("csv_path", Text, nullable=True),
    Column("created_at", Time, nullable=False),
    CheckConstraint("status IN ('pending', 'resolved')", name="status"),
)

payout_items = Table(
    "payout_items",
    metadata,
    Column("end_to_end_id", String(35), primary_key=True),
    Column("batch_id", Id, ForeignKey("payout_batches.id"), nullable=False, index=True),
    Column("person_id", Key, ForeignKey("people.id"), nullable=False),
    Column("amount_microunits", Amount, nullable=False),
    Column("status", String(16), nullable=False),
    Column("resolved_at", Time, nullable=True),
    CheckConstraint("status IN ('pending', 'settled', 'failed')", name="status"),
)

# Audit -------------------------------------------------------------------------------------------
audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Key, primary_key=True, autoincrement=False),
    Column("at", Time, nullable=False),
    Column("kind", String(64), nullable=False),
    Column("subject", String(ID_LENGTH_MAX), nullable=False),
    Column("payload", Text, nullable=False),
    Column("prev_sha256", Sha256, nullable=False),
    Column("sha256", Sha256, nullable=False),
)

# Service access ----------------------------------------------------------------------------------
# Secrets (API keys, login-link and session tokens) are stored only as SHA-256 hashes; a key is found by
# its public prefix id and its hash compared in constant time. Rows are revoked or used, never deleted.
api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("secret_sha256", Sha256, nullable=False),
    Column("role", String(16), nullable=False),
    Column("scopes", String(200), nullable=False),
    Column("label", String(NAME_LENGTH_MAX), nullable=False),
    Column("created_at", Time, nullable=False),
    Column("revoked_at", Time, nullable=True),
    # A guild key speaks for one trusted issuer and sees only aggregates of its members (migration 0009).
    Column("issuer", Id, nullable=True),
    CheckConstraint("role IN ('operator', 'auditor', 'guild')", name="role"),
    CheckConstraint("(role = 'guild') = (issuer IS NOT NULL)", name="guild_issuer"),
)

auth_challenges = Table(
    "auth_challenges",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("person_id", Key, ForeignKey("people.id"), nullable=False, index=True),
    Column("nonce", String(64), nullable=False),
    Column("expires_at", Time, nullable=False),
    Column("used_at", Time, nullable=True),
    Column("created_at", Time, nullable=False),
)

login_links = Table(
    "login_links",
    metadata,
    Column("token_sha256", Sha256, primary_key=True),
    Column("person_id", Key, ForeignKey("people.id"), nullable=False, index=True),
    Column("created_by", String(32), nullable=False),
    Column("expires_at", Time, nullable=False),
    Column("used_at", Time, nullable=True),
    Column("created_at", Time, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("token_sha256", Sha256, primary_key=True),
    Column("person_id", Key, ForeignKey("people.id"), nullable=False, index=True),
    Column("via", String(16), nullable=False),
    Column("expires_at", Time, nullable=False),
    Column("revoked_at", Time, nullable=True),
    Column("created_at", Time, nullable=False),
    CheckConstraint("via IN ('challenge', 'link')", name="via"),
)

usage_intake = Table(
    "usage_intake",
    metadata,
    Column("seq", Key, primary_key=True, autoincrement=True),  # arrival order
    Column("batch_id", Id, nullable=False, unique=True),
    Column("request_sha256", Sha256, nullable=False),
    Column("content_type", String(100), nullable=False),
    Column("body", LargeBinary, nullable=False),  # emptied once the batch is accrued or refused
    Column("body_bytes", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),  # queued, accrued, refused
    Column("error_code", String(32)),
    Column("error_message", Text),
    Column("received_at", Time, nullable=False),
    Column("finished_at", Time),
    Index("ix_usage_intake_state_seq", "state", "seq"),
)

usage_requests = Table(
    "usage_requests",
    metadata,
    Column("batch_id", Id, primary_key=True),
    Column("request_sha256", Sha256, nullable=False),
    Column("response_json", Text, nullable=False),
    Column("created_at", Time, nullable=False),
)
