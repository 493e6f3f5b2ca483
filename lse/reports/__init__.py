"""What reads a population for people: curves (pure), figures, the report, status and
``lse pop``.  Only reports ever compute test accuracies (cached in eval/)."""
