"""Language models: pretraining, embedding, k-mer profiles and clustering agreement."""
