"""Analysis: metric providers, the condition language and the judge that turns measurements into verdicts."""
