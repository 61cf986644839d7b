"""config.toml settings and the network profiles."""

from __future__ import annotations

import dataclasses
import tomllib

import pytest

from gossip import config
from gossip.config import Config, ConfigError, Profile


def test_profiles_start_from_lan_and_override_a_few_fields():
    lan = Profile.lan()
    for name in config.PROFILES:
        p = Profile.named(name)
        assert p.name == name
        changed = {
            f.name for f in dataclasses.fields(p) if getattr(p, f.name) != getattr(lan, f.name)
        }
        assert len(changed) <= 8  # an override, not a different config
        assert 0 < p.backoff_base <= p.backoff_cap
        assert p.fanout >= 1 and p.interval > 0 and p.request_timeout > 0
    assert Profile.local().interval < Profile.lan().interval < Profile.tailnet().interval
    assert Profile.lan().with_(fanout=5).fanout == 5
    with pytest.raises(ConfigError, match="unknown profile 'wan'"):
        Profile.named("wan")


def test_config_file_round_trip(tmp_path):
    cfg = Config("lab", profile="tailnet", listen="[::1]:7000", peers=("a.example:7471",))
    config.create(tmp_path, cfg)
    assert config.load(tmp_path) == cfg
    assert (tmp_path / config.CONFIG_FILE).stat().st_mode & 0o777 == 0o600
    assert config.load(tmp_path).network_profile() == Profile.tailnet()


def test_defaults_are_written_as_comments(tmp_path):
    cfg = Config("lab")
    assert tomllib.loads(cfg.to_toml()) == {"name": "lab"}
    config.create(tmp_path, cfg)
    assert config.load(tmp_path) == cfg
    assert cfg.profile == "lan" and cfg.listen == config.DEFAULT_LISTEN and cfg.peers == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('profile = "wan"\n', "unknown profile"),
        ("profile = 3\n", "'profile' must be a string"),
        ('listen = "localhost"\n', "not a host:port"),
        ('listen = "::1:80"\n', "not a host:port"),
        ('peers = "a:1"\n', "'peers' must be a list"),
        ('peers = ["a:1", "b"]\n', "not a host:port"),
        ('peers = ["a:99999"]\n', "not a host:port"),
        ('colour = "red"\n', "unknown setting 'colour'"),
    ],
)
def test_bad_settings_name_the_file(tmp_path, text, message):
    (tmp_path / config.CONFIG_FILE).write_text('name = "h"\n' + text)
    with pytest.raises(ConfigError, match=message) as e:
        config.load(tmp_path)
    assert config.CONFIG_FILE in str(e.value)
