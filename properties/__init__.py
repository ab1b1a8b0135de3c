"""The claims: one module per constructions module. Every module here is imported by verify.discovery."""
