"""Completeness: what a case still needs from outside before and during review — records or
answers asked of the patient or their doctor, and physical materials sent by post."""
