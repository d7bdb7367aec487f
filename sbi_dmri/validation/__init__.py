"""Analytic-versus-Monte-Carlo validation and the compendium of machine-readable records."""

from .compendium import check_record as check_record
from .compendium import make_record as make_record
from .validate import validate as validate
