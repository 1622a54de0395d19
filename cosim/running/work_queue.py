"""Cohort members handed out over MPI without waiting on anyone's stepping: world rank 0
holds the counter and a dispatcher thread answers the other group leaders."""

from __future__ import annotations

import threading
import time

from cosim.errors import SimulationError

TAG_REQUEST, TAG_MEMBER = 901, 902
DISPATCH_POLL = 0.0005  # seconds between two looks for work requests (rank 0's dispatcher)


class WorkQueue:
    """Hands out member positions to the group leaders without waiting on anyone's stepping.

    World rank 0 holds the counter. A dispatcher thread there answers the other leaders'
    requests as they come (it looks every ``DISPATCH_POLL`` seconds whatever rank 0's own
    member is doing: MPI runs with ``MPI_THREAD_MULTIPLE``); rank 0's own leader takes from
    the counter directly. Leader i starts with member i without asking, and asks for its next
    member as soon as it starts one, so the answer is there when it finishes. ``waited``: the
    seconds this leader's members waited to start, summed (the measure of dispatch).
    """

    def __init__(self, comm, count: int, leaders: int, leader: int):
        from mpi4py import MPI

        self.comm = comm
        self.count = count
        self.coordinator = comm.Get_rank() == 0
        self.leaders = leaders
        self.next_index = leaders  # leaders 0 … leaders-1 start with their own number
        self.leaders_done = sum(1 for i in range(1, leaders) if i >= count)  # none for them
        self._first = leader if leader < count else -1
        self._asked: list | None = None  # the request for the next member, once sent
        self._lock = threading.Lock()
        self.waited = 0.0
        self._dispatcher = None
        if self.coordinator and leaders > 1:
            if MPI.Query_thread() < MPI.THREAD_MULTIPLE:
                raise SimulationError(
                    "this MPI library does not provide MPI_THREAD_MULTIPLE, which the cohort "
                    "dispatcher on rank 0 needs; build mpi4py against an MPI with thread "
                    "support (MPICH and Open MPI have it) and do not lower "
                    "mpi4py.rc.thread_level")
            self._dispatcher = threading.Thread(target=self._dispatch, daemon=True,
                                                name="cosim-dispatcher")
            self._dispatcher.start()

    def next(self) -> int:
        if self._first is not None:
            index, self._first = self._first, None
        elif self.coordinator:
            index = self._take()
        else:
            from mpi4py import MPI

            waiting = time.perf_counter()
            _, index = MPI.Request.waitall(self._asked)
            self.waited += time.perf_counter() - waiting
            self._asked = None
        if index >= 0 and not self.coordinator:
            self._asked = [self.comm.isend(None, dest=0, tag=TAG_REQUEST),
                           self.comm.irecv(source=0, tag=TAG_MEMBER)]
        return index

    def _take(self) -> int:
        with self._lock:
            if self.next_index >= self.count:
                return -1
            self.next_index += 1
            return self.next_index - 1

    def _dispatch(self) -> None:
        """Rank 0's dispatcher thread: answer every other leader until each has been told
        there is no more."""
        from mpi4py import MPI

        status = MPI.Status()
        while self.leaders_done < self.leaders - 1:
            if self.comm.Iprobe(source=MPI.ANY_SOURCE, tag=TAG_REQUEST, status=status):
                source = status.Get_source()
                self.comm.recv(source=source, tag=TAG_REQUEST)
                index = self._take()
                if index < 0:
                    self.leaders_done += 1
                self.comm.send(index, dest=source, tag=TAG_MEMBER)
            else:
                time.sleep(DISPATCH_POLL)

    def finish(self) -> None:
        """Rank 0: wait until the dispatcher has told every other leader there is no more."""
        if self._dispatcher is not None:
            self._dispatcher.join()
