"""Contestants, pair counts and versioned leaderboard releases."""
