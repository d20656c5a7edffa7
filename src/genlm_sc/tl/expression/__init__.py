"""Expression: cross-validated fits per gene (PrediXcan dosages, embeddings, fine-tuning),
gene-level fits across genes, and predictability."""
