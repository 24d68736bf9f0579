"""One APIRouter per resource: segment, model, health, Label Studio, the page."""
