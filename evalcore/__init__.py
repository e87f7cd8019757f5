"""Evaluation core of Ladder: rating maths and few-shot evaluation, free of the web stack."""
