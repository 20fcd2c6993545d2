def test_services_are_real(redis_url: str, db: str) -> None:
    import redis
    from sqlalchemy import text

    from switchyard.db import get_engine

    assert redis.Redis.from_url(redis_url).ping()
    with get_engine(db).connect() as conn:
        assert conn.execute(text("select count(*) from jobs")).scalar() == 0
