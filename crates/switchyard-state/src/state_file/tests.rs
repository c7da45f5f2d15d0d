use super::*;

fn dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "switchyard-state-{test}-{}-{:08x}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn each_write_keeps_the_previous_generation() {
    let dir = dir("generations");
    let path = dir.join("list.json");
    assert_eq!(load::<Vec<u32>>(&path).unwrap(), None, "nothing saved yet");
    write_list(&path, &[1u32]).unwrap();
    assert!(
        !previous(&path).exists(),
        "a first write has nothing to keep"
    );
    write_list(&path, &[1u32, 2]).unwrap();
    write_list(&path, &[3u32]).unwrap();
    assert_eq!(read_list::<u32>(&path).unwrap(), [3]);
    assert_eq!(read_list::<u32>(&previous(&path)).unwrap(), [1, 2]);
    assert!(!sibling(&path, ".tmp").exists());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_torn_file_falls_back_to_the_previous_generation_and_is_kept_aside() {
    let dir = dir("torn");
    let path = dir.join("list.json");
    write_list(&path, &[1u32, 2]).unwrap();
    write_list(&path, &[1u32, 2, 3]).unwrap();
    std::fs::write(&path, b"[1, 2,").unwrap(); // what a crash mid-write used to leave
    assert_eq!(read_list::<u32>(&path).unwrap(), [1, 2]);
    assert_eq!(
        std::fs::read(sibling(&path, ".corrupt")).unwrap(),
        b"[1, 2,"
    );
    // Put back in place: the next start reads it without falling back, and the next write
    // keeps a good generation, not the torn one.
    assert_eq!(parse::<Vec<u32>>(&path).unwrap(), [1, 2]);
    write_list(&path, &[4u32]).unwrap();
    assert_eq!(read_list::<u32>(&previous(&path)).unwrap(), [1, 2]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_torn_file_without_a_previous_generation_stops_the_start_with_a_way_out() {
    let dir = dir("no-prev");
    let path = dir.join("kill_switches.json");
    std::fs::write(&path, b"").unwrap();
    let error = read_list::<u32>(&path).unwrap_err().to_string();
    assert!(error.contains(&path.display().to_string()), "{error}");
    assert!(error.contains("kill_switches.json.prev"), "{error}");
    assert!(error.contains("move"), "{error}");
    std::fs::write(previous(&path), b"{not json").unwrap();
    let error = read_list::<u32>(&path).unwrap_err().to_string();
    assert!(error.contains("does not parse"), "{error}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_failed_write_names_the_file_and_leaves_the_old_one() {
    let dir = dir("fail");
    let path = dir.join("list.json");
    write_list(&path, &[1u32]).unwrap();
    std::fs::create_dir_all(sibling(&path, ".tmp")).unwrap();
    let error = write_list(&path, &[2u32]).unwrap_err();
    assert!(error.contains("list.json"), "{error}");
    assert!(error.contains("temporary"), "{error}");
    assert_eq!(read_list::<u32>(&path).unwrap(), [1]);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_metric_label_is_the_file_name_and_one_series_for_incidents() {
    let dir = Path::new("/var/lib/switchyard");
    assert_eq!(
        metric_label(&dir.join("kill_switches.json")),
        "kill_switches.json"
    );
    assert_eq!(metric_label(&dir.join("budget.json")), "budget.json");
    let record = dir.join("incidents").join("inc-20261204T101500Z-3f9a.json");
    assert_eq!(metric_label(&record), "incidents");
}
