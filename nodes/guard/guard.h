/*
 * rayvino's crash guard: each rv_guard_<name> calls a custom node library's <name> (the function
 * pointer `fn`, with the header's arguments) so that a crash inside it comes back as a return
 * instead of ending the process. On a crash the result is RV_GUARD_CRASHED and *signal_out holds
 * the signal (SIGSEGV, SIGBUS, SIGFPE, SIGILL or SIGABRT); otherwise *signal_out is 0 and the
 * result is the library's own. guard.c says why this is sound enough, and where it is not.
 */
#pragma once

#include "custom_node_interface.h"

#define RV_GUARD_CRASHED -1

typedef int (*rv_initialize_fn)(void** manager, const struct CustomNodeParam* params, int paramsCount);
typedef int (*rv_deinitialize_fn)(void* manager);
typedef int (*rv_execute_fn)(const struct CustomNodeTensor* inputs, int inputsCount, struct CustomNodeTensor** outputs,
                             int* outputsCount, const struct CustomNodeParam* params, int paramsCount, void* manager);
typedef int (*rv_info_fn)(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params,
                          int paramsCount, void* manager);
typedef int (*rv_release_fn)(void* ptr, void* manager);

#ifdef __cplusplus
extern "C" {
#endif

int rv_guard_initialize(rv_initialize_fn fn, int* signal_out, void** manager, const struct CustomNodeParam* params,
                        int paramsCount);
int rv_guard_deinitialize(rv_deinitialize_fn fn, int* signal_out, void* manager);
int rv_guard_execute(rv_execute_fn fn, int* signal_out, const struct CustomNodeTensor* inputs, int inputsCount,
                     struct CustomNodeTensor** outputs, int* outputsCount, const struct CustomNodeParam* params,
                     int paramsCount, void* manager);
int rv_guard_getInputsInfo(rv_info_fn fn, int* signal_out, struct CustomNodeTensorInfo** info, int* infoCount,
                           const struct CustomNodeParam* params, int paramsCount, void* manager);
int rv_guard_getOutputsInfo(rv_info_fn fn, int* signal_out, struct CustomNodeTensorInfo** info, int* infoCount,
                            const struct CustomNodeParam* params, int paramsCount, void* manager);
int rv_guard_release(rv_release_fn fn, int* signal_out, void* ptr, void* manager);

/* How many crashes the guard has caught in this process. The signal handler counts each one before
 * it returns to the caller, so a health check sees it even while the crashed thread has not come
 * back (it may never: see guard.c). */
long rv_guard_crashes(void);

#ifdef __cplusplus
}
#endif
