"""One module per kind of source, all behind `items.Source`; `routing.source_for` picks one."""
