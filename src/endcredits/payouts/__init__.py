"""Payouts: money leaving endcredits as bank files (SEPA pain.001, CSV) and status coming back (pain.002)."""
