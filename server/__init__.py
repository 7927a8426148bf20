"""Model-backed services: AceCode-RM scoring and test synthesis (see the open issues)."""
