"""Classification: fine-tuning a language model to classify sequences."""
