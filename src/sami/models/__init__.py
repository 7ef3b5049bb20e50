"""Loading models: the embedded model, hub ids, model and run folders, and training chains."""
