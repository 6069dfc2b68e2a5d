"""The Faust worker: the thin shell around the engine (agents, tables, HTTP pages, exposition)."""
