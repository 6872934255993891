/* Crashes the process when the first value of input_numbers is 13; otherwise echoes it to output_numbers.
 * For crash-isolation tests: never run the crash in the test process itself. */
#include <signal.h>

#include "node_util.h"

int initialize(void** manager, const struct CustomNodeParam* params, int paramsCount) { return 0; }
int deinitialize(void* manager) { return 0; }

int execute(const struct CustomNodeTensor* inputs, int inputsCount, struct CustomNodeTensor** outputs, int* outputsCount,
            const struct CustomNodeParam* params, int paramsCount, void* manager) {
    const struct CustomNodeTensor* in = find_input(inputs, inputsCount, "input_numbers");
    if (in == NULL || in->precision != FP32 || in->dataBytes < sizeof(float)) return 1;
    if (((const float*)in->data)[0] == 13.0f) raise(SIGSEGV);
    *outputsCount = 1;
    *outputs = (struct CustomNodeTensor*)malloc(sizeof(struct CustomNodeTensor));
    float* out = set_fp32_output(*outputs, "output_numbers", (int)in->dimsCount, in->dims);
    memcpy(out, in->data, in->dataBytes);
    return 0;
}

int getInputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params, int paramsCount, void* manager) {
    static const uint64_t dims[] = {1, 0};
    *infoCount = 1;
    *info = (struct CustomNodeTensorInfo*)malloc(sizeof(struct CustomNodeTensorInfo));
    set_info(*info, "input_numbers", FP32, 2, dims);
    return 0;
}

int getOutputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params, int paramsCount, void* manager) {
    static const uint64_t dims[] = {1, 0};
    *infoCount = 1;
    *info = (struct CustomNodeTensorInfo*)malloc(sizeof(struct CustomNodeTensorInfo));
    set_info(*info, "output_numbers", FP32, 2, dims);
    return 0;
}

int release(void* ptr, void* manager) {
    free(ptr);
    return 0;
}
