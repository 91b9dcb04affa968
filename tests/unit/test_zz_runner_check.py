import unittest


class RunnerCheck(unittest.TestCase):
    def test_pass(self):
        pass

    def test_pass_too(self):
        pass

    def test_fail(self):
        self.fail('on purpose')

    def test_skip(self):
        self.skipTest('on purpose')
