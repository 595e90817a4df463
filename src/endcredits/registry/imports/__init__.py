"""Imports and exports: C2PA manifests, Croissant datasets and opt-out signals (TDMRep, IPTC
``plus:DataMining``, ai.txt) into works, credits, lineage and consent grants; manifests out as C2PA and
Croissant. Each import is one transaction: bad input changes nothing. See docs/concepts/imports.md."""

from endcredits.registry.imports._common import SIGNAL_VALID_DAYS_DEFAULT, TDM_USES, ImportReport, Window
from endcredits.registry.imports.c2pa_manifests import Ingredient, SigningKey, import_c2pa, sign_work
from endcredits.registry.imports.croissant import export_croissant, import_croissant, load_croissant
from endcredits.registry.imports.optout import (
    DMI_DECISIONS,
    Signal,
    ai_txt_signal,
    import_signals,
    parse_headers,
    tdmrep_combined,
    tdmrep_from_text,
    tdmrep_headers,
    tdmrep_html,
    tdmrep_well_known,
    xmp_signal,
)

__all__ = [
    "DMI_DECISIONS",
    "SIGNAL_VALID_DAYS_DEFAULT",
    "TDM_USES",
    "ImportReport",
    "Ingredient",
    "Signal",
    "SigningKey",
    "Window",
    "ai_txt_signal",
    "export_croissant",
    "import_c2pa",
    "import_croissant",
    "import_signals",
    "load_croissant",
    "parse_headers",
    "sign_work",
    "tdmrep_combined",
    "tdmrep_from_text",
    "tdmrep_headers",
    "tdmrep_html",
    "tdmrep_well_known",
    "xmp_signal",
]
