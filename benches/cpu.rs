//! CPU seconds of a process, for the benches' figures (Linux `/proc/<pid>/stat`).

/// User plus system CPU seconds of process `pid` (`"self"`: this one) so far: fields 14
/// and 15 of `/proc/<pid>/stat`, in clock ticks of 1/100 s; 0 where it cannot be read.
pub fn cpu_seconds(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // The command name (field 2) may hold spaces; the fields after it follow its `)`.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Field 3 (state) is fields[0] here, so utime (14) and stime (15) are 11 and 12.
    (ticks(11) + ticks(12)) / 100.0
}
