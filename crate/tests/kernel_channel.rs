//! A job under saekit-kernel connects to the kernel's socket and is cancelled by a `cancel` line (what an
//! interrupt sends); its connection closes when it ends. The kernel's side is played by a real Unix socket.
//! One test in this binary, since it sets a process-wide environment variable.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::time::Duration;

use saekit::Error;
use saekit::display::kernel::SOCKET_ENV;
use saekit::jobs::{Job, JobStatus};

#[test]
fn a_job_registers_with_the_kernel_and_an_interrupt_cancels_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kernel.sock");
    let listener = UnixListener::bind(&path).unwrap();
    // SAFETY: the only test in this binary; set before any job thread starts.
    unsafe { std::env::set_var(SOCKET_ENV, &path) };

    let job: Job<u64> = Job::spawn("spin", |ctx| {
        let mut turns = 0;
        loop {
            ctx.check()?;
            turns += 1;
            std::thread::sleep(Duration::from_millis(5));
            if turns > 20_000 {
                return Ok(turns); // 100 s: the test has failed by then
            }
        }
    });
    let (mut stream, _) = listener.accept().unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut hello = String::new();
    BufReader::new(stream.try_clone().unwrap()).read_line(&mut hello).unwrap();
    let hello: serde_json::Value = serde_json::from_str(&hello).unwrap();
    assert_eq!(hello["op"], "job");
    assert_eq!(hello["name"], "spin");
    // It registers as it starts, before its status says running.
    assert!(!job.status().is_finished());

    stream.write_all(b"cancel\n").unwrap();
    assert!(matches!(job.wait(), Err(Error::Cancelled)));
    assert_eq!(job.status(), JobStatus::Cancelled);
    // The job closed its end when it finished.
    let mut rest = Vec::new();
    assert_eq!(stream.read_to_end(&mut rest).unwrap(), 0);
}
