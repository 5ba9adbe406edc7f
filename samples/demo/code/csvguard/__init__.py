"""csvguard: validate CSV files at the door."""
from .schema import Schema, parse_date
from .validate import Report, RowError, validate_file, validate_rows

__all__ = ["Schema", "parse_date", "Report", "RowError", "validate_file", "validate_rows"]
