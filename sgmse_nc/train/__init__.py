"""Training: building data, model and trainer from the composed config and resuming (run), the
checkpoint and seeding callbacks (callbacks), validation metrics on whole utterances (evaluator), and the
train command (cli)."""
