# Augments response_tracker.py when scripts/build_compiled.py compiles it (its Cython twin):
# an extension type with its state in C slots. Every attribute the .py sets is listed here.

cdef class ResponseTracker:
    cdef public object _base
    cdef public object _capture
    cdef public object _ended
    cdef public object _has_metadata_flag
    cdef public object _has_more_fragments
    cdef public object _has_progress_reports
    cdef public object _infile_continues
    cdef public object _is_cursor
    cdef public object _is_deprecate_eof
    cdef public object _is_end_pending
    cdef public object _is_reading_partial
    cdef public object _is_state_changed
    cdef public object _last_insert_id
    cdef public object _partial
    cdef public object _partial_start
    cdef public object _queue
    cdef public object _remaining
    cdef public object _skip
    cdef public object _state
    cdef public object _state_change_oks
    cdef public object _statement_id
    cdef public object _status
    cdef public object ends
    cdef public object has_session_state_changed
    cdef public object last_error_code
    cdef public object end_offsets
    cdef public object ok_marks
