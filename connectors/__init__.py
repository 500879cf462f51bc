"""Workforce connectors behind one interface: internal pool, vendor API, Mechanical Turk."""
