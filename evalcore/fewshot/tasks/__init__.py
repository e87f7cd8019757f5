"""Built-in task declarations; importing a module registers its tasks."""
