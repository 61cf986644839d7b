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
        ('peers = ["a:²"]\n', "not a host:port"),  # a digit int() refuses
        ('colour = "red"\n', "unknown setting 'colour'"),
        ("[breakers]\nmax_open = 30\n", "'max_open' in \\[breakers\\]"),
        ("[breakers]\nmax_open = true\n", "'max_open' in \\[breakers\\]"),
        ("[breakers]\nopen = 60\n", "unknown"),
        ("recall = 1\n", "'recall' must be a section"),
        ("[recall]\nshare = 0.5\n", "unknown setting 'share' in \\[recall\\]"),
        ("[recall]\nauthor_share = 0\n", "'author_share' in \\[recall\\] must be a number more "
                                         "than 0 and at most 1.*not 0"),
        ("[recall]\nauthor_share = 2\n", "'author_share' in \\[recall\\].*not 2"),
        ('[recall]\nauthor_share = "half"\n', "'author_share' in \\[recall\\].*'half'"),
        ("[recall]\nauthor_share = true\n", "'author_share' in \\[recall\\]"),
        ("[recall]\nbackdate_skew = -1\n", "'backdate_skew' in \\[recall\\] must be a number"),
    ],
)
def test_bad_settings_name_the_file(tmp_path, text, message):
    (tmp_path / config.CONFIG_FILE).write_text('name = "h"\n' + text)
    with pytest.raises(ConfigError, match=message) as e:
        config.load(tmp_path)
    assert config.CONFIG_FILE in str(e.value)


def test_discovery_sections(tmp_path):
    (tmp_path / config.CONFIG_FILE).write_text(
        'name = "h"\n'
        "[mdns]\n"
        'interfaces = ["eth0", "192.168.1.10"]\n'
        "[tailnet]\n"
        'command = "/opt/tailscale/bin/tailscale status --json"\n'
        'tags = ["tag:gossip"]\n'
        'hostname = "build-*"\n'
        "port = 7000\n"
        "interval = 60\n"
    )
    cfg = config.load(tmp_path)
    assert cfg.mdns == config.MdnsSettings(interfaces=("eth0", "192.168.1.10"))
    assert cfg.tailnet == config.TailnetSettings(
        command=("/opt/tailscale/bin/tailscale", "status", "--json"),
        tags=("tag:gossip",),
        hostname="build-*",
        port=7000,
        interval=60.0,
    )
    # Written back, it reads the same.
    again = tmp_path / "again"
    again.mkdir()
    config.create(again, cfg)
    assert config.load(again) == cfg
    assert Config("lab").mdns == config.MdnsSettings()  # defaults: every interface
    assert Config("lab").tailnet.command == ("tailscale", "status", "--json")


def test_the_profile_turns_discovery_on_unless_the_file_says_otherwise(tmp_path):
    assert (Config("h").use_mdns, Config("h").use_tailnet) == (True, False)  # lan
    tail = Config("h", profile="tailnet")
    assert (tail.use_mdns, tail.use_tailnet) == (False, True)
    assert not Config("h", profile="local").use_mdns
    (tmp_path / config.CONFIG_FILE).write_text(
        'name = "h"\n[mdns]\nenabled = false\n[tailnet]\nenabled = true\n'
    )
    cfg = config.load(tmp_path)
    assert (cfg.use_mdns, cfg.use_tailnet) == (False, True)
    again = tmp_path / "again"
    again.mkdir()
    config.create(again, cfg)
    assert config.load(again) == cfg


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("mdns = 1\n", "'mdns' must be a section"),
        ("[mdns]\ninterface = []\n", "unknown setting 'interface' in \\[mdns\\]"),
        ('[mdns]\ninterfaces = "eth0"\n', "'interfaces' in \\[mdns\\] must be a list"),
        ("[tailnet]\ncommand = []\n", "'command' in \\[tailnet\\]"),
        ("[tailnet]\ncommand = \"tailscale 'status\"\n", "'command' in \\[tailnet\\].*quotation"),
        ("[tailnet]\nport = 0\n", "'port' in \\[tailnet\\]"),
        ('[mdns]\nenabled = "yes"\n', "'enabled' in \\[mdns\\]"),
        ("[tailnet]\ninterval = 0.1\n", "'interval' in \\[tailnet\\]"),
        ("[tailnet]\ntags = [1]\n", "'tags' in \\[tailnet\\]"),
        ('[tailnet]\nfile = ""\n', "'file' in \\[tailnet\\]"),
    ],
)
def test_bad_discovery_settings_name_the_file(tmp_path, text, message):
    (tmp_path / config.CONFIG_FILE).write_text('name = "h"\n' + text)
    with pytest.raises(ConfigError, match=message) as e:
        config.load(tmp_path)
    assert config.CONFIG_FILE in str(e.value)


def test_agents_listen_defaults_to_loopback_8888_and_empty_turns_it_off(tmp_path):
    from gossip.daemon import ServeSettings

    home = tmp_path / "h"
    home.mkdir()
    assert config.load(home).agents_listen == "127.0.0.1:8888"
    (home / config.CONFIG_FILE).write_text('name = "h"\n[agents]\nlisten = ""\n')
    assert config.load(home).agents_listen == ""
    assert ServeSettings.resolve(home).agents_listen == ""
    assert ServeSettings.resolve(home, agents_listen="127.0.0.1:9").agents_listen == "127.0.0.1:9"
    custom = Config("h", agents_listen="[::1]:8890")
    (home / config.CONFIG_FILE).write_text(custom.to_toml())
    assert config.load(home) == custom
    for bad, message in (("listen = 8888", "must be a string"), ("listen = 'nowhere'", "host:port"),
                         ("port = 1", "unknown setting 'port' in [agents]")):  # fmt: skip
        (home / config.CONFIG_FILE).write_text(f'name = "h"\n[agents]\n{bad}\n')
        with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
            config.load(home)


def test_a_breakers_cap_reaches_the_views(tmp_path):
    """``[breakers] max_open`` (issue 17, item 9): round trip, and the reading policy."""
    cfg = Config("lab", breaker_max_open=3600.0)
    config.create(tmp_path, cfg)
    assert config.load(tmp_path) == cfg
    policy = config.view_config(follow_vouches=False, breaker_max_open=3600.0)
    assert policy.breaker_max_open_ms == 3_600_000
    default = config.view_config(follow_vouches=True, breaker_max_open=None)
    assert default.breaker_max_open_ms == 86_400_000 and default.follow_vouches


def test_recall_section_sets_the_share_and_the_skew(tmp_path):
    cfg = Config("lab", recall=config.RecallSettings(author_share=0.25, backdate_skew=3600.0))
    config.create(tmp_path, cfg)
    assert config.load(tmp_path) == cfg
    views = config.load(tmp_path).view_config()
    assert (views.author_share, views.backdate_skew_ms) == (0.25, 3_600_000)
    default = Config("lab").view_config()
    assert (default.author_share, default.backdate_skew_ms) == (0.5, 86_400_000)
    assert "# [recall]" in Config("lab").to_toml()  # the default, as a comment
