"""Query rules: PS3.4 C.2.2.2 matching (its one home) and character sets of answers."""
