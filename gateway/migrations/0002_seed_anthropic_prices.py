"""Seed the price catalog with Anthropic's list prices (any provider)."""

from datetime import datetime

from django.db import migrations

from gateway.price_catalog import CATALOG_EFFECTIVE_FROM, catalog_rows


def seed_prices(apps, schema_editor):
    ModelPrice = apps.get_model("gateway", "ModelPrice")
    effective_from = datetime.fromisoformat(CATALOG_EFFECTIVE_FROM)
    for row in catalog_rows():
        ModelPrice.objects.get_or_create(
            provider=None, model=row["model"], effective_from=effective_from, defaults=row
        )


def unseed_prices(apps, schema_editor):
    ModelPrice = apps.get_model("gateway", "ModelPrice")
    effective_from = datetime.fromisoformat(CATALOG_EFFECTIVE_FROM)
    ModelPrice.objects.filter(
        provider=None,
        effective_from=effective_from,
        model__in=[row["model"] for row in catalog_rows()],
    ).delete()


class Migration(migrations.Migration):
    dependencies = [("gateway", "0001_initial")]

    operations = [migrations.RunPython(seed_prices, unseed_prices)]
