"""Consent: use-case grants, their windows and revocations, and the rules that decide a use."""
