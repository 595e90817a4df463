"""Imports and exports: C2PA manifests, Croissant datasets and opt-out signals (TDMRep, IPTC
``plus:DataMining``, ai.txt) into works, credits, lineage and consent grants; manifests out as C2PA and
Croissant. Each import is one transaction: bad input changes nothing. See docs/concepts/imports.md.

The package imports nothing itself: each importer loads its own libraries (c2pa, mlcroissant) only when used."""
