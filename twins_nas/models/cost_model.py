"""Closed-form cost model (TO BE WRITTEN): mirrors twins.py."""
