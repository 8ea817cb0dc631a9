"""The serverless half: lifecycle (queue → ARM → table), culler and reconciler (timers)."""
