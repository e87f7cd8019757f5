"""Pair counts and versioned leaderboard releases."""
