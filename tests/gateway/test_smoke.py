def test_price_catalog_is_seeded(db):
    from gateway.models import ModelPrice

    assert ModelPrice.objects.filter(model="claude-opus-5", provider__isnull=True).count() == 1
