from cli.hostcpu import StealMeter, cpu_times, steal_percent, steal_warning

STAT = "cpu  {user} 0 {system} {idle} 0 0 0 {steal} 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\n"


def test_steal_is_the_share_of_all_cpu_time_between_two_readings():
    before = cpu_times(STAT.format(user=100, system=50, idle=800, steal=50))
    after = cpu_times(STAT.format(user=300, system=100, idle=850, steal=250))
    assert before["steal"] == 50 and before["user"] == 100
    assert steal_percent(before, after) == 40.0
    assert steal_percent(after, after) is None


def test_the_meter_reads_around_the_body_and_a_quiet_host_gives_no_warning():
    readings = iter(
        [cpu_times(STAT.format(user=0, system=0, idle=0, steal=0)), cpu_times(STAT.format(user=97, system=0, idle=0, steal=3))]
    )
    with StealMeter(read=lambda: next(readings)) as meter:
        pass
    assert meter.percent == 3.0
    assert steal_warning("2 slot(s) x 1 core(s)", meter.percent) is None
    assert "took 35.0% of this machine's CPU time during plain" in steal_warning("plain", 35.0)


def test_the_meter_reads_this_machine():
    with StealMeter() as meter:
        sum(range(100000))
    assert meter.percent is None or 0.0 <= meter.percent <= 100.0


def test_the_demo_phase_table_shows_each_phase_with_its_steal():
    from cli.demo import PhaseClock

    class FixedMeter(StealMeter):
        def __exit__(self, *exc):
            self.percent = 12.5

    clock = PhaseClock(meter=FixedMeter)
    with clock("stage"):
        pass
    assert clock.steal == {"stage": 12.5}
    assert "| stage | 0.0 | 12.5 |" in clock.table() and clock.table().endswith("| total | 0.0 | |\n")
