"""Adapting models: full fine-tuning, LoRA, special tool tokens, knowledge distillation."""
