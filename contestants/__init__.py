"""The contestant registry: who competes, how to serve it, and its evaluation results."""
