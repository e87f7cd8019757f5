"""Model submissions: upload, safe validation, the evaluation pipeline and its accounting."""
