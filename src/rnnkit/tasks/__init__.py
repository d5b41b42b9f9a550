"""Tasks: for each task name, which reader, vocabulary, model and metrics belong together.

The CLI calls these functions; they hold the wiring, the models and trainer
hold the logic.
"""
