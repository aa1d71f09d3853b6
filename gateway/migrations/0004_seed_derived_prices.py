"""Add prices for models newer than the reference table (see gateway/price_catalog.py)."""

from datetime import datetime

from django.db import migrations

DERIVED = {"claude-opus-5-5": ("4", "5.00", "8", "0.40", "20")}
EFFECTIVE_FROM = "2025-01-01T00:00:00+00:00"


def seed(apps, schema_editor):
    ModelPrice = apps.get_model("gateway", "ModelPrice")
    for model, (inp, write_5m, write_1h, read, out) in DERIVED.items():
        ModelPrice.objects.get_or_create(
            provider=None,
            model=model,
            effective_from=datetime.fromisoformat(EFFECTIVE_FROM),
            defaults={
                "input_per_mtok": inp,
                "cache_write_5m_per_mtok": write_5m,
                "cache_write_1h_per_mtok": write_1h,
                "cache_read_per_mtok": read,
                "output_per_mtok": out,
            },
        )


def unseed(apps, schema_editor):
    ModelPrice = apps.get_model("gateway", "ModelPrice")
    ModelPrice.objects.filter(
        provider=None,
        model__in=list(DERIVED),
        effective_from=datetime.fromisoformat(EFFECTIVE_FROM),
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("gateway", "0003_model_id_validators")]

    operations = [migrations.RunPython(seed, unseed)]
