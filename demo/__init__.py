"""The embedded demo of `make run`: demo checkpoints, contestants and the curated prompts.

It sits above the apps it fills (contestants, arena) and the zoo, so `core` imports none of them.
"""
