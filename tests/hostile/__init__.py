"""Hostile specs: files written to break the validator, each with the words its refusal must contain."""
