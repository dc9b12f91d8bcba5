"""Records + published rows -> boards (pure) -> renderers; curves and the significance test."""
