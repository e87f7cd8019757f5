"""Blind pairwise battles: prompts, answers, votes."""
